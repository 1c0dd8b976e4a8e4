//! `hostel:host/postgres` over host-held PostgreSQL pools.
//!
//! App-lifetime state: one [`PostgresPools`] per distinct `[pools]` entry of kind `postgres`:
//! one login's pool for the one tenant granted a pool with a `url`, or a pool per tenant, each
//! on the tenant's own login role and database ([`tenants`]), for a pool with an `admin_url`.
//! Request-lifetime state: the guest's `connection`s (a pool, nothing held) and
//! `transaction`s (a leased connection each), in its resource table. A transaction the guest
//! does not finish — dropped, trapped, timed out — is rolled back when the table drops with
//! the sandbox; every connection goes back to its pool in the state of a new one
//! ([`hygiene`]). Every failure reaches the guest as an `error` value, never as a trap.

mod hygiene;
mod pool;
mod server;
mod tenants;
mod values;

pub use pool::PostgresPool;

use super::grants::Refusal;
use crate::apps::TenantRuntime;
use crate::config::{PoolConfig, Tenancy};
use crate::sandbox::SandboxState;
use anyhow::{Context, Result};
use pool::{Answer, Want};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "hostel:host/postgres-imports",
        imports: { default: async | trappable },
        with: {
            "hostel:host/postgres.connection": super::Connection,
            "hostel:host/postgres.transaction": super::Transaction,
        },
    });
}

use bindings::hostel::host::postgres::{self as wit, Error, Rows, Value};

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
    pub fn open(name: &str, config: &PoolConfig, tenants: &[String]) -> Result<Arc<PostgresPools>> {
        let admin = server::Server::from_pool(config).with_context(|| {
            format!(
                "invalid PostgreSQL URL for pool {name:?} ({})",
                config.address()
            )
        })?;
        Ok(Arc::new(match config.tenancy {
            Tenancy::Dedicated => PostgresPools::Dedicated {
                identity: admin.identity(),
                pool: PostgresPool::new(name, admin, config)?,
            },
            Tenancy::PerTenant => {
                let provisioner = Arc::new(tenants::Provisioner::new(admin)?);
                let pools = tenants
                    .iter()
                    .map(|tenant| {
                        let pool =
                            PostgresPool::for_tenant(name, tenant, provisioner.clone(), config)?;
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

impl crate::pools::ServerPool for PostgresPools {
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

/// A guest's handle on a granted pool; each statement leases a connection for itself.
pub struct Connection {
    pool: Arc<PostgresPool>,
}

/// A guest's open transaction: the connection it leased, until commit or rollback.
pub struct Transaction {
    pool: Arc<PostgresPool>,
    /// `None` once committed or rolled back.
    lease: Option<pool::Lease>,
}

impl Transaction {
    fn lease(&mut self) -> Result<&mut pool::Lease, Error> {
        self.lease.as_mut().ok_or(Error::Finished)
    }

    async fn finish(&mut self, sql: &'static str) -> Result<(), Error> {
        let lease = self.lease.take().ok_or(Error::Finished)?;
        self.pool.report(lease.finish(sql).await)
    }
}

/// The view the generated host traits are implemented on.
pub struct Postgres<'a> {
    tenant: &'a TenantRuntime,
    table: &'a mut ResourceTable,
}

struct PostgresMarker;

impl HasData for PostgresMarker {
    type Data<'a> = Postgres<'a>;
}

pub fn add_to_linker(linker: &mut Linker<SandboxState>) -> Result<()> {
    fn view(state: &mut SandboxState) -> Postgres<'_> {
        let (tenant, table) = state.tenant_and_table();
        Postgres { tenant, table }
    }
    wit::add_to_linker::<_, PostgresMarker>(linker, view)?;
    Ok(())
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

impl wit::Host for Postgres<'_> {}

impl wit::HostConnection for Postgres<'_> {
    async fn open(&mut self, name: String) -> Outcome<Resource<Connection>> {
        let pool = match self.tenant.postgres.open(&name) {
            Ok(pool) => pool.clone(),
            Err(Refusal::NotGranted) => return Ok(Err(Error::NotGranted(name))),
            Err(Refusal::NoSuch) => {
                tracing::warn!("no PostgreSQL pool named {name:?} is configured");
                return Ok(Err(Error::NoSuchPool(name)));
            }
        };
        Ok(Ok(self.table.push(Connection { pool })?))
    }

    async fn query(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
        params: Vec<Value>,
    ) -> Outcome<Rows> {
        let limit = self.tenant.limits.memory;
        let pool = self.table.get(&conn)?.pool.clone();
        let outcome = async {
            pool.lease()
                .await?
                .alone(&sql, params, Want::Rows, limit)
                .await
        }
        .await;
        Ok(pool.report(outcome).map(rows))
    }

    async fn execute(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
        params: Vec<Value>,
    ) -> Outcome<u64> {
        let limit = self.tenant.limits.memory;
        let pool = self.table.get(&conn)?.pool.clone();
        let outcome = async {
            pool.lease()
                .await?
                .alone(&sql, params, Want::Affected, limit)
                .await
        }
        .await;
        Ok(pool.report(outcome).map(affected))
    }

    async fn begin(&mut self, conn: Resource<Connection>) -> Outcome<Resource<Transaction>> {
        let pool = self.table.get(&conn)?.pool.clone();
        let outcome = async {
            let mut lease = pool.lease().await?;
            lease.begin().await?;
            Ok(lease)
        }
        .await;
        let lease = match pool.report(outcome) {
            Ok(lease) => lease,
            Err(e) => return Ok(Err(e)),
        };
        let tx = Transaction {
            pool,
            lease: Some(lease),
        };
        Ok(Ok(self.table.push(tx)?))
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

impl wit::HostTransaction for Postgres<'_> {
    async fn query(
        &mut self,
        tx: Resource<Transaction>,
        sql: String,
        params: Vec<Value>,
    ) -> Outcome<Rows> {
        let limit = self.tenant.limits.memory;
        let tx = self.table.get_mut(&tx)?;
        let outcome = async {
            tx.lease()?
                .in_transaction(&sql, params, Want::Rows, limit)
                .await
        }
        .await;
        Ok(tx.pool.report(outcome).map(rows))
    }

    async fn execute(
        &mut self,
        tx: Resource<Transaction>,
        sql: String,
        params: Vec<Value>,
    ) -> Outcome<u64> {
        let limit = self.tenant.limits.memory;
        let tx = self.table.get_mut(&tx)?;
        let outcome = async {
            tx.lease()?
                .in_transaction(&sql, params, Want::Affected, limit)
                .await
        }
        .await;
        Ok(tx.pool.report(outcome).map(affected))
    }

    async fn commit(&mut self, tx: Resource<Transaction>) -> Outcome<()> {
        Ok(self.table.get_mut(&tx)?.finish("COMMIT").await)
    }

    async fn rollback(&mut self, tx: Resource<Transaction>) -> Outcome<()> {
        Ok(self.table.get_mut(&tx)?.finish("ROLLBACK").await)
    }

    /// Dropping an open transaction rolls it back (in the lease's drop).
    async fn drop(&mut self, tx: Resource<Transaction>) -> wasmtime::Result<()> {
        self.table.delete(tx)?;
        Ok(())
    }
}
