//! `hostel:host/postgres` over host-held PostgreSQL pools.
//!
//! Config: the `[pools]` entries of kind `postgres`; a tenant's grant: `grants.pools`.
//! App-lifetime state: one [`PostgresPools`] per distinct `[pools]` entry of kind `postgres`:
//! one login's pool for the one tenant granted a pool with a `url`, or a pool per tenant, each
//! on the tenant's own login role and database ([`tenants`]), for a pool with an `admin_url`.
//! Tenant state: its own pool of each it was granted. Request-lifetime state: the guest's `connection`s (a pool, nothing held) and
//! `transaction`s (a leased connection each), in its resource table. A transaction the guest
//! does not finish — dropped, trapped, timed out — is rolled back when the table drops with
//! the sandbox; every connection goes back to its pool in the state of a new one
//! ([`hygiene`]). Every failure reaches the guest as an `error` value, never as a trap.
//!
//! Both WIT editions — `@0.1.0` for WASI 0.2 guests, `@0.2.0` (`async func`s) for WASI 0.3 ones
//! — run on the same methods of [`Connection`] and [`TransactionCall`] ([`resource_calls!`]).

mod hygiene;
mod pool;
mod server;
mod tenants;
mod values;

pub use pool::PostgresPool;

use super::grants::{Grants, Refusal};
use super::servers::{self, PoolConfig, PoolKind, ServerPool, Servers, Tenancy};
use super::shape::{
    Capability, ConfigFile, HasView, RequestInfo, TenantInfo, WasiReleases, host_view,
    resource_calls,
};
use crate::metrics::{Metrics, PoolClock, PoolTime, RequestUsage};
use crate::sections::Table;
use crate::traces::pool_call;
use anyhow::{Context, Result, bail};
use pool::{Answer, Want};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use wasmtime::component::{Linker, Resource};

mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "hostel:host/postgres-imports@0.1.0",
        imports: { default: async | trappable },
        with: {
            "hostel:host/postgres@0.1.0.connection": super::Connection,
            "hostel:host/postgres@0.1.0.transaction": super::Transaction,
        },
    });
}

/// The WASI 0.3 edition: the same types, its statements `async func`s called concurrently.
mod v0_2 {
    wasmtime::component::bindgen!({
        path: ["../wit", "../wit/service"],
        world: "hostel:host/postgres-host@0.2.0",
        imports: { default: trappable },
        with: {
            "hostel:host/postgres@0.1.0": super::v0_1::hostel::host::postgres,
            "hostel:host/postgres@0.2.0.connection": super::Connection,
            "hostel:host/postgres@0.2.0.transaction": super::Transaction,
        },
    });
}

use v0_1::hostel::host::postgres::{self as wit, Error, Rows, Value};
use v0_2::hostel::host0_2_0::postgres as wit_async;

/// A configured PostgreSQL pool: one login for the one tenant granted it, or a login, a
/// database and a pool of connections per tenant granted it.
pub enum PostgresPools {
    Dedicated {
        pool: Arc<PostgresPool>,
        /// Where and as whom it logs in (see [`PostgresPools::dedicated_login`]).
        identity: String,
    },
    PerTenant(HashMap<String, Arc<PostgresPool>>),
}

impl PostgresPools {
    /// Creates the pools of a `[pools]` entry without connecting; `tenants` are the tenants
    /// granted it (for a per-tenant pool, each gets its own).
    pub fn open(
        name: &str,
        config: &PoolConfig,
        tenants: &[String],
        metrics: &Arc<Metrics>,
    ) -> Result<Arc<PostgresPools>> {
        let admin = server::Server::from_pool(config).with_context(|| {
            format!(
                "invalid PostgreSQL URL for pool {name:?} ({})",
                config.address()
            )
        })?;
        Ok(Arc::new(match config.tenancy {
            Tenancy::Dedicated => PostgresPools::Dedicated {
                identity: admin.identity(),
                pool: PostgresPool::new(name, admin, config, metrics)?,
            },
            Tenancy::PerTenant => {
                let provisioner = Arc::new(tenants::Provisioner::new(admin)?);
                let pools = tenants
                    .iter()
                    .map(|tenant| {
                        let pool = PostgresPool::for_tenant(
                            name,
                            tenant,
                            provisioner.clone(),
                            config,
                            metrics,
                        )?;
                        Ok((tenant.clone(), pool))
                    })
                    .collect::<Result<_>>()?;
                PostgresPools::PerTenant(pools)
            }
        }))
    }

    /// The pool `tenant`'s statements use, if it has one here.
    pub fn for_tenant(&self, tenant: &str) -> Option<Arc<PostgresPool>> {
        match self {
            PostgresPools::Dedicated { pool, .. } => Some(pool.clone()),
            PostgresPools::PerTenant(pools) => pools.get(tenant).cloned(),
        }
    }

    /// For a dedicated pool, the server, port, database and user it logs in as: two tenants
    /// with the same one could read each other's tables.
    pub fn dedicated_login(&self) -> Option<&str> {
        match self {
            PostgresPools::Dedicated { identity, .. } => Some(identity),
            PostgresPools::PerTenant(_) => None,
        }
    }

    fn each(&self) -> Vec<&Arc<PostgresPool>> {
        match self {
            PostgresPools::Dedicated { pool, .. } => vec![pool],
            PostgresPools::PerTenant(pools) => pools.values().collect(),
        }
    }
}

impl ServerPool for PostgresPools {
    /// Every pool answers (a per-tenant pool: every tenant's login is provisioned and works).
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            for pool in self.each() {
                pool.check().await?;
            }
            Ok(())
        })
    }

    fn reap_idle(&self) {
        self.each().into_iter().for_each(|p| p.reap_idle());
    }

    fn close(&self) {
        self.each().into_iter().for_each(|p| p.close());
    }
}

/// A guest's handle on a granted pool; each statement leases a connection for itself. Cloned
/// out of the resource table for each call.
#[derive(Clone)]
pub struct Connection {
    pool: Arc<PostgresPool>,
    /// The tenant's memory limit: a result larger is refused.
    memory_limit: u64,
    /// Times its leases for the request's bill.
    clock: PoolClock,
}

/// A guest's open transaction: the connection it leased, until commit or rollback.
pub struct Transaction {
    pool: Arc<PostgresPool>,
    memory_limit: u64,
    lease: Held,
}

enum Held {
    Open(Box<pool::Lease>),
    /// Taken out by a call in progress ([`TransactionCall`]).
    InCall,
    /// Committed or rolled back.
    Finished,
}

/// One call on a transaction, owning its lease until [`Transaction::give_back`]. A call cut
/// off (the request ended mid-statement) drops the lease in flight, which cancels the
/// statement and closes the connection, ending the transaction on the server.
pub struct TransactionCall {
    pool: Arc<PostgresPool>,
    memory_limit: u64,
    lease: Result<pool::Lease, Error>,
    finished: bool,
}

impl Transaction {
    fn take_for_call(&mut self) -> TransactionCall {
        let lease = match std::mem::replace(&mut self.lease, Held::InCall) {
            Held::Open(lease) => Ok(*lease),
            Held::InCall => Err(Error::Unavailable(
                "the transaction is busy with another statement: a transaction runs one at a \
                 time"
                    .into(),
            )),
            Held::Finished => {
                self.lease = Held::Finished;
                Err(Error::Finished)
            }
        };
        TransactionCall {
            pool: self.pool.clone(),
            memory_limit: self.memory_limit,
            lease,
            finished: false,
        }
    }

    /// Puts the lease back, or marks the transaction finished; a call that found it busy has
    /// nothing to return.
    fn give_back(&mut self, call: TransactionCall) {
        match call.lease {
            Ok(lease) => self.lease = Held::Open(Box::new(lease)),
            Err(_) if call.finished => self.lease = Held::Finished,
            Err(_) => {}
        }
    }
}

pub struct Postgres;

/// A tenant's pools, and how much it may hold in memory (a result larger is refused).
pub struct TenantPostgres {
    pools: Grants<Arc<PostgresPool>>,
    memory_limit: u64,
}

impl Capability for Postgres {
    const GRANTS: &'static [&'static str] = &["pools"];

    type Config = BTreeMap<String, PoolConfig>;
    /// Names of the pools granted (of any kind).
    type Grant = Vec<String>;
    type App = HashMap<String, Arc<PostgresPools>>;
    type Tenant = TenantPostgres;
    type Request = PoolTime;

    fn config(file: &ConfigFile<'_>) -> Result<Self::Config> {
        Ok(servers::of_kind(file.pools, PoolKind::Postgres))
    }

    fn grant(grants: &Table<'_>, _: &Self::Config, file: &ConfigFile<'_>) -> Result<Vec<String>> {
        servers::granted_pools(grants, file.pools)
    }

    /// Creates (without connecting) the pools of every entry. Refuses to let two tenants
    /// share one login: each could read the other's tables.
    fn app(
        pools: &Self::Config,
        granted: &[(&str, &Vec<String>)],
        servers: &mut Servers,
    ) -> Result<Self::App> {
        let tenants_of = |name: &String| -> BTreeSet<String> {
            granted
                .iter()
                .filter(|(_, pools)| pools.contains(name))
                .map(|(tenant, _)| tenant.to_string())
                .collect()
        };
        let mut open = HashMap::new();
        for (name, pool) in pools {
            // Entries with equal settings share one pool: it serves their tenants.
            let tenants: Vec<String> = pools
                .iter()
                .filter(|(_, other)| *other == pool)
                .flat_map(|(other, _)| tenants_of(other))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let pool = servers.shared(name, pool, |name, config, metrics| {
                PostgresPools::open(name, config, &tenants, metrics)
            })?;
            open.insert(name.clone(), pool);
        }
        // Who logs in as whom, across every dedicated pool.
        let mut logins: BTreeMap<&str, (BTreeSet<&str>, BTreeSet<String>)> = BTreeMap::new();
        for (name, pool) in &open {
            if let Some(login) = pool.dedicated_login() {
                let (names, tenants) = logins.entry(login).or_default();
                names.insert(name);
                tenants.extend(tenants_of(name));
            }
        }
        for (login, (names, tenants)) in logins {
            if tenants.len() > 1 {
                let names: Vec<&str> = names.into_iter().collect();
                let tenants: Vec<String> = tenants.into_iter().collect();
                bail!(
                    "[pools.{}] log in to PostgreSQL as one user ({login}) and are granted to \
                     tenants {}: each could read and change the others' tables. Give each tenant \
                     a pool of its own login, or replace `url` with `admin_url` so that the host \
                     gives every tenant its own login role and database",
                    names.join("], [pools."),
                    tenants.join(", ")
                );
            }
        }
        Ok(open)
    }

    fn tenant(
        pools: &Self::App,
        tenant: &TenantInfo<'_>,
        granted: &Vec<String>,
    ) -> Result<TenantPostgres> {
        Ok(TenantPostgres {
            pools: Grants::new(
                "PostgreSQL pool",
                "pools",
                granted,
                pools.iter().map(|(n, p)| (n, p.for_tenant(tenant.name))),
            ),
            memory_limit: tenant.limits.memory,
        })
    }

    fn request(_: &TenantPostgres, _: &RequestInfo<'_>) -> Result<PoolTime> {
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

host_view!(PostgresView for Postgres);

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Error {
        match refusal {
            Refusal::NoSuch(message) => Error::NoSuchPool(message),
            Refusal::NotGranted(message) => Error::NotGranted(message),
        }
    }
}

type Outcome<T> = wasmtime::Result<Result<T, Error>>;

/// The rows of a statement run for its rows.
fn rows(answer: Answer) -> Rows {
    match answer {
        Answer::Rows(rows) => rows,
        Answer::Affected(_) => unreachable!("asked for rows"),
    }
}

/// The count of a statement run for its affected rows.
fn affected(answer: Answer) -> u64 {
    match answer {
        Answer::Affected(n) => n,
        Answer::Rows(rows) => rows.rows.len() as u64,
    }
}

/// What every `connection` call does, whichever WIT edition the guest called it through.
impl Connection {
    async fn query(&self, sql: String, params: Vec<Value>) -> Result<Rows, Error> {
        let outcome = async {
            let lease = self.pool.lease(&self.clock).await?;
            lease
                .alone(&sql, params, Want::Rows, self.memory_limit)
                .await
        }
        .await;
        self.pool.report(outcome).map(rows)
    }

    async fn execute(&self, sql: String, params: Vec<Value>) -> Result<u64, Error> {
        let outcome = async {
            let lease = self.pool.lease(&self.clock).await?;
            lease
                .alone(&sql, params, Want::Affected, self.memory_limit)
                .await
        }
        .await;
        self.pool.report(outcome).map(affected)
    }

    async fn begin(&self) -> Result<Transaction, Error> {
        let outcome = async {
            let mut lease = self.pool.lease(&self.clock).await?;
            lease.begin().await?;
            Ok(lease)
        }
        .await;
        Ok(Transaction {
            pool: self.pool.clone(),
            memory_limit: self.memory_limit,
            lease: Held::Open(Box::new(self.pool.report(outcome)?)),
        })
    }
}

/// What every `transaction` call does, whichever WIT edition the guest called it through.
impl TransactionCall {
    async fn query(&mut self, sql: String, params: Vec<Value>) -> Result<Rows, Error> {
        let lease = self.lease.as_mut().map_err(|e| e.clone())?;
        let outcome = lease
            .in_transaction(&sql, params, Want::Rows, self.memory_limit)
            .await;
        self.pool.report(outcome).map(rows)
    }

    async fn execute(&mut self, sql: String, params: Vec<Value>) -> Result<u64, Error> {
        let lease = self.lease.as_mut().map_err(|e| e.clone())?;
        let outcome = lease
            .in_transaction(&sql, params, Want::Affected, self.memory_limit)
            .await;
        self.pool.report(outcome).map(affected)
    }

    async fn commit(&mut self) -> Result<(), Error> {
        self.finish("COMMIT").await
    }

    async fn rollback(&mut self) -> Result<(), Error> {
        self.finish("ROLLBACK").await
    }

    async fn finish(&mut self, sql: &'static str) -> Result<(), Error> {
        let lease = std::mem::replace(&mut self.lease, Err(Error::Finished))?;
        self.finished = true;
        self.pool.report(lease.finish(sql).await)
    }
}

impl super::shape::Footprint for Value {
    const OWNS_HEAP: bool = true;
    fn heap_bytes(&self) -> usize {
        match self {
            Value::Text(text) | Value::Json(text) => text.len(),
            Value::Bytes(bytes) => bytes.len(),
            _ => 0,
        }
    }
}

impl PostgresView<'_> {
    fn open(&mut self, name: String) -> Outcome<Resource<Connection>> {
        let pool = match self.tenant.pools.open(&name) {
            Ok(pool) => pool.clone(),
            Err(refusal) => return Ok(Err(refusal.into())),
        };
        let connection = Connection {
            pool,
            memory_limit: self.tenant.memory_limit,
            clock: self.request.clock(),
        };
        Ok(Ok(self.table.push(connection)?))
    }

    fn connection(&mut self, conn: &Resource<Connection>) -> wasmtime::Result<Connection> {
        Ok(self.table.get(conn)?.clone())
    }

    /// Connections hold nothing a call took.
    fn connection_done(&mut self, _: &Resource<Connection>, _: Connection) -> wasmtime::Result<()> {
        Ok(())
    }

    fn push_transaction(
        &mut self,
        tx: Result<Transaction, Error>,
    ) -> Outcome<Resource<Transaction>> {
        Ok(match tx {
            Ok(tx) => Ok(self.table.push(tx)?),
            Err(e) => Err(e),
        })
    }

    fn transaction_call(
        &mut self,
        tx: &Resource<Transaction>,
    ) -> wasmtime::Result<TransactionCall> {
        Ok(self.table.get_mut(tx)?.take_for_call())
    }

    fn give_back(
        &mut self,
        tx: &Resource<Transaction>,
        call: TransactionCall,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(tx)?.give_back(call);
        Ok(())
    }
}

impl wit::Host for PostgresView<'_> {}
impl wit_async::Host for PostgresView<'_> {}

resource_calls! {
    Resource<Connection> => connection, connection_done;
    errors Error;
    v0_1 PostgresView: wit::HostConnection {
        async fn open(&mut self, name: String) -> Outcome<Resource<Connection>> {
            PostgresView::open(self, name)
        }

        async fn begin(&mut self, conn: Resource<Connection>) -> Outcome<Resource<Transaction>> {
            let connection = self.connection(&conn)?;
            let tx = pool_call(module_path!(), "begin", connection.begin()).await;
            self.push_transaction(tx)
        }
    }
    v0_2 PostgresView: wit_async::HostConnection {
        fn open(&mut self, name: String) -> Outcome<Resource<Connection>> {
            PostgresView::open(self, name)
        }
    }
    with store ViewData: wit_async::HostConnectionWithStore {
        async fn begin(
            store: &wasmtime::component::Accessor<T, Self>,
            conn: Resource<Connection>,
        ) -> Outcome<Resource<Transaction>> {
            let connection = store.with(|mut access| access.get().connection(&conn))?;
            let tx = pool_call(module_path!(), "begin", connection.begin()).await;
            store.with(|mut access| access.get().push_transaction(tx))
        }
    }
    calls {
        query(sql: String, params: Vec<Value>) -> Rows;
        execute(sql: String, params: Vec<Value>) -> u64;
    }
}

resource_calls! {
    Resource<Transaction> => transaction_call, give_back;
    errors Error;
    v0_1 PostgresView: wit::HostTransaction {}
    v0_2 PostgresView: wit_async::HostTransaction {}
    with store ViewData: wit_async::HostTransactionWithStore {}
    calls {
        query(sql: String, params: Vec<Value>) -> Rows;
        execute(sql: String, params: Vec<Value>) -> u64;
        commit() -> ();
        rollback() -> ();
    }
}
