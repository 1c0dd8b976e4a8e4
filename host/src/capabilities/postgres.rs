//! `hostel:host/postgres` over host-held PostgreSQL pools.
//!
//! App-lifetime state: one [`PostgresPool`] per distinct `[pools]` entry of kind `postgres`.
//! Request-lifetime state: the guest's `connection`s (a pool name, nothing held) and
//! `transaction`s (a leased connection each), in its resource table. A transaction the guest
//! does not finish — dropped, trapped, timed out — is rolled back when the table drops with
//! the sandbox, and its connection goes back to the pool; see [`pool::Lease`]. Every failure
//! reaches the guest as an `error` value, never as a trap.

mod pool;
mod values;

pub use pool::PostgresPool;

use super::grants::Refusal;
use crate::apps::TenantRuntime;
use crate::sandbox::SandboxState;
use anyhow::Result;
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
        let pool = self.table.get(&conn)?.pool.clone();
        let outcome = async { pool.lease().await?.query(&sql, params).await }.await;
        Ok(pool.report(outcome))
    }

    async fn execute(
        &mut self,
        conn: Resource<Connection>,
        sql: String,
        params: Vec<Value>,
    ) -> Outcome<u64> {
        let pool = self.table.get(&conn)?.pool.clone();
        let outcome = async { pool.lease().await?.execute(&sql, params).await }.await;
        Ok(pool.report(outcome))
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
        let tx = self.table.get_mut(&tx)?;
        let outcome = async { tx.lease()?.query(&sql, params).await }.await;
        Ok(tx.pool.report(outcome))
    }

    async fn execute(
        &mut self,
        tx: Resource<Transaction>,
        sql: String,
        params: Vec<Value>,
    ) -> Outcome<u64> {
        let tx = self.table.get_mut(&tx)?;
        let outcome = async { tx.lease()?.execute(&sql, params).await }.await;
        Ok(tx.pool.report(outcome))
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
